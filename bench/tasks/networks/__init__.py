"""Task networks written here: ESPNet's architecture, one-stage detectors' heads decoded and NMS."""
