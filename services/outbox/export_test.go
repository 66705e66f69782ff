package outbox

// TakeStatement is takeStatement, for the test of its plan.
var TakeStatement = takeStatement

// DeleteFastStatement is deleteFastStatement, for the test of its plan.
var DeleteFastStatement = deleteFastStatement

// LockID is the advisory lock the relay's drains take, for a test that holds it as another
// replica's drain would.
func (r *Relay) LockID() int64 { return r.lockID }
