"""neural-mirage: style transfer whose content is what VGG19's fully connected layers see."""

__version__ = "0.1.0"
