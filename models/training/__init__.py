"""Training: the CNN (single or many devices), a head's fit and vector cache, and fine-tuning a backbone."""
