//go:build race

package reliability_test

// raceEnabled scales load down under the race detector.
const raceEnabled = true
