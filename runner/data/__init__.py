"""Dataset sources and format presets -> TRL's standard and conversational rows."""
