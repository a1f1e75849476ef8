"""One wrapper per exported graph: fixed, named inputs and outputs, as `streamsam.contracts` says."""
