"""Reading samples and writing files: images, video clips, content digests."""
