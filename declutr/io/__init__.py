"""Reading and writing models: export to transformers / sentence-transformers and loading back.

See ``declutr.io.export`` (imported on use: it needs torch and transformers).
"""
