"""Tool-use specifics, pure Python: parsing responses (`parsing`), token region labels (`regions`), ToolRL's
reward and the `REWARDS` registry (`reward`)."""
