"""Datasets: the in-memory dataset type, the Tianchi/COCO/YOLO formats and the synthetic generator."""
