package policyexec

import "sync/atomic"

// guard makes Close safe against concurrent use of an object shared between
// goroutines (Engine, Chain): the C object is freed exactly once, when its
// owner has closed it and no call that entered before is still inside C.
//
// refs is 1 for the owner plus 1 per call (or child object) in flight; 0
// means freed. closed is set by the first Close.
type guard struct {
	refs   int64
	closed int32
}

func newGuard() guard { return guard{refs: 1} }

// enter takes a reference for one call; false once the owner has closed.
func (g *guard) enter() bool {
	if atomic.LoadInt32(&g.closed) != 0 {
		return false
	}
	for {
		r := atomic.LoadInt64(&g.refs)
		if r <= 0 {
			return false
		}
		if atomic.CompareAndSwapInt64(&g.refs, r, r+1) {
			return true
		}
	}
}

// exit drops a reference; true when it was the last one: free now.
func (g *guard) exit() bool { return atomic.AddInt64(&g.refs, -1) == 0 }

// close marks the owner's Close; true the first time only (then the caller
// drops the owner's reference with exit).
func (g *guard) close() bool { return atomic.CompareAndSwapInt32(&g.closed, 0, 1) }
