"""Standard evaluators: COCO mAP (pycocotools), segmentation mIoU from a confusion matrix."""
