"""DCP-CLIP model components: the open_clip backbone adapter, text banks, the head and its variants."""
