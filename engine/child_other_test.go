//go:build !unix

package engine_test

// childModeEnv switches the test binary into a child program (unix only).
const childModeEnv = "PETREL_TEST_CHILD"

func runChildMode(string) int { return 2 }
