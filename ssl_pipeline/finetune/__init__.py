"""The fine-tune stage: heads on a pretrained encoder vs supervised baselines, over label fractions."""
