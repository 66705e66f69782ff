package outbox

// TakeStatement is takeStatement, for the test of its plan.
var TakeStatement = takeStatement
