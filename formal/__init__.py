"""Formal proofs of the CFPU and the lane (issue 16): under construction."""
