package client

// WithFirstSeq returns cfg with the sequence number of each session's
// PROTOCHECK set to seq (normally 1), so that a test reaches the end of a
// version-1 session's sequence numbers in a few calls.
func WithFirstSeq(cfg Config, seq uint32) Config {
	cfg.firstSeq = seq
	return cfg
}
