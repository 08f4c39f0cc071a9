"""Human-machine methods of the survey's families: EAC/ICMH, SICMH, latent-space scalability, compressed-domain
heads, feature streams; and the task networks cut in two that some of them code."""
