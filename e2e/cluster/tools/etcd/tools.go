//go:build tools

// Package tools pins the etcd server that e2e/cluster/build.sh compiles. The module
// go.etcd.io/etcd/server/v3 is itself the etcd main package.
package tools

import _ "go.etcd.io/etcd/server/v3"
