"""quagmire: does the post-SFT score predict the post-RL score? A reproducible SFT -> GRPO study."""

__version__ = "0.1.0"
