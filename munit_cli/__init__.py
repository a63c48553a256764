"""munit: multimodal unsupervised image-to-image translation (MUNIT) as a command-line tool."""

__version__ = "0.1.0"
