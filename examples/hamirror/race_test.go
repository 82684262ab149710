//go:build race

package main

// raceBuild is true when the tests run with the race detector: the
// process test then builds the daemon with it too, which reuses the
// packages already compiled for the test and checks the daemon as well.
const raceBuild = true
