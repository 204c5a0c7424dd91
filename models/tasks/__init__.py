"""What users run on a model: predict (and its results files), evaluate, embed, similar, report, the demo."""
