"""Datasets: the dataset type, the Tianchi/COCO/YOLO formats, the synthetic generator."""
