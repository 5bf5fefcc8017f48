"""The names of the result profiles: the config's two profiles, and the paper architectures that the
offline profile counts (FLOP records only). A module of its own so that the paths every stage writes and
the record schema share them without the training code depending on the record schema."""

EVAL_PROFILES = ("offline", "paper")  # = ExperimentConfig.profile (a test keeps them equal)
PAPER_ARCH_PROFILE = "paper-arch"  # paper architectures counted by the offline profile (FLOP records only)
FLOPS_PROFILES = (*EVAL_PROFILES, PAPER_ARCH_PROFILE)
