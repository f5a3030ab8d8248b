//go:build cluster

package e2e

import "time"

// updateWindow is the length of each slot's window on the cluster of make
// test-cluster: twice the dev server's. On a loaded machine running the
// whole cluster, CI once saw two timers fire 20 s late, which a 20 s window
// cannot hold; production windows are hours long.
const updateWindow = 40 * time.Second
