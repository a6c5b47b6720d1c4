// Package chaos is a fault-injection harness for zkafka workers: point it at your processor
// and it checks, from the broker's side, that nothing is lost while brokers fail, coordinators
// move, workers join, leave, are cancelled or killed, and processors fail.
//
// [Run] starts an embedded kfake cluster (testhelper.EmbeddedBroker), produces messages to a
// topic while several zkafka Works of one consumer group process them — some in this
// process, some as separate OS processes (the test binary re-executed, so a worker can be
// killed with SIGKILL and restarted) — and injects faults on a schedule drawn from a seeded
// random generator. At the end every worker is stopped gracefully, a final drain worker reads
// to the end, and five invariants are checked:
//
//  1. No loss: every offset of the topic was processed successfully or is in the dead letter
//     topic (matched by its zkafka-original-partition/offset headers).
//  2. Per-key order: within each run of a worker, messages of a key started in offset order;
//     a step back is allowed only after a group rebalance (the new assignment re-reads from
//     the committed offset).
//  3. Duplicates are counted, split by cause (Report.DuplicatesByCause), and bounded by
//     Config.MaxDuplicateRatio.
//  4. No commit passed an unfinished message: every OffsetCommit request the broker received
//     is checked against the time each earlier offset was finished (its processor returned
//     success, or the Work's OnDone ran after its dead letter was acknowledged).
//  5. No overlap: no two handlers of one key ran at the same moment, in one worker run or
//     across runs and processes (handlers the harness makes ignore their context are left
//     out: the Work abandons them by design while they still run).
//
// A broken invariant fails the test with the partition, offset and key it concerns; the
// [Report] gives the counts either way.
//
// The harness lives in its own package, not in testhelper, because zkafka's own tests import
// testhelper and testhelper therefore cannot import zkafka.
package chaos
