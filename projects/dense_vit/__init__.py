"""Plain-ViT adapters for mmdetection and mmsegmentation; the registering
package is :mod:`projects.dense_vit.dense_vit` (see README.md here)."""
