package zkafka

// Names zkafka v2 exports that this library itself has no use for, kept so that code written
// against v2 compiles unchanged.

// TopicPartition is a partition and an offset (zkafka v2 exports it; nothing here takes or
// returns it).
type TopicPartition struct {
	// Partition number.
	Partition int32
	// Offset in the partition.
	Offset int64
}

// LifecycleHooksOption is a WorkFactoryOption that sets the factory's lifecycle hooks, like
// WithWorkLifecycleHooks. Its zero value sets no hooks.
type LifecycleHooksOption struct{ h LifecycleHooks }

func (o LifecycleHooksOption) apply(wf *WorkFactory) { wf.hooks = o.h }
