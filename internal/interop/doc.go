// Package interop tests Petrel against the original Petrel library
// (github.com/firepear/petrel v0.40.0), in both directions, over TCP on the
// loopback interface.
//
// It holds only tests. They check that:
//
//   - an original client talks to our server, on every engine variant
//     (reactor with a worker pool, reactor inline, std): the protocol
//     check, echoes of every byte value up to 100 KB and of an empty
//     payload, 400, 402, 500 for handler errors, panics and timeouts, the
//     classic status table on a version-0 session, and many clients at
//     once, without the original client ever panicking;
//   - our client and the petrel command talk to an original server: echo,
//     400, 500 and the original's 402;
//   - the original's own defects show against itself (original client and
//     original server): payloads beyond about 160 KB come back corrupted,
//     and HMAC never works. These tests assert the failure, so that they
//     start failing, and get noticed, if the peer ever changes.
//
// # Running
//
//	cd internal/interop && GOWORK=off go test -race -count=1 ./...
//
// GOWORK=off because a go.work at the repository's root, if there is one,
// does not list this module. Set PETREL_TEST_LOG=1 to see both servers'
// logs. This module's go.mod lists the root module's requirements as
// indirect ones: after changing those, run GOWORK=off go mod tidy here too.
//
// # Why a module of its own
//
// The original is not served by the module proxy: this module reaches it
// with a replace directive to ../../../shared/peers/firepear-petrel-v0.40.0,
// which exists in the project's workspace and CI but not in a user's clone.
// As a module of its own, the root module's go.mod and go.sum never
// mention it, and the root module's ./... does not include these tests.
//
// Without that directory Go cannot build these tests at all: loading the
// package fails with "replacement directory ... does not exist" before any
// test code, TestMain included, runs. So the skip cannot live in the tests:
// whoever runs them checks for the directory first (make test does), and
// a user's clone, which has no shared/, does not run them.
package interop
