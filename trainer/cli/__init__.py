"""The command line: argument handling, the Hydra allow-list, and OmegaConf resolvers."""
