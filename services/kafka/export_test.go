package kafka

// Produces is how many produce requests the publisher's writers sent since they were last asked.
func (p *Publisher) Produces() int64 { return p.small.Stats().Writes + p.large.Stats().Writes }

// SmallPublish is smallPublish, for the test of calls either side of it.
const SmallPublish = smallPublish
