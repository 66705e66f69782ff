package kafka

// Produces is how many produce requests the publisher's writer sent since it was last asked.
func (p *Publisher) Produces() int64 { return p.writer.Stats().Writes }
