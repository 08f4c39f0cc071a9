"""Conventional codecs (SBAR): JPEG, WebP, JPEG 2000, JPEG XL, AVIF, HEVC intra, VTM; H.264/5, AV1, VP9."""
