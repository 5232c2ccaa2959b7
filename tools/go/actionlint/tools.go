//go:build tools

// Package tools pins actionlint's main package so `go mod tidy` keeps its dependencies.
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
