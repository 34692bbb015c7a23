//go:build tools

// Package tools pins the CoreDNS release that e2e/cluster/build.sh compiles; the module root
// is the coredns main package, built with its default plugin set (including kubernetes).
package tools

import _ "github.com/coredns/coredns"
