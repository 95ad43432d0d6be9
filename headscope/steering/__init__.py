"""LoFiT head offsets, contrastive (GLOV / CAA) vectors, vector files."""
