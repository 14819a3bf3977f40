//go:build race

package main

// raceEnabled: the race detector multiplies memory use, so memory bounds
// are not measured in race builds.
const raceEnabled = true
