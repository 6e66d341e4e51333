//go:build tools

// Package tools records the commands this module builds, so `go mod tidy`
// keeps their dependencies: the server, and promtool (which checks and
// unit-tests the alert rules in manifests/monitoring/).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
