package io.flinktask.samples;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * Small stateful streaming job for testing deployments: a rate-limited sequence of numbers is
 * keyed by {@code number % keys}, and a keyed operator counts the records of each key in a
 * {@code ValueState}. The counts are published as operator metrics (see {@link CountPerKey}), so
 * a test can read them through Flink's REST API and prove that state survived a savepoint.
 *
 * <p>Program arguments, all optional:
 *
 * <ul>
 *   <li>{@code --rate N}: records per second over all source subtasks (default 20)
 *   <li>{@code --keys N}: number of distinct keys (default 4)
 *   <li>{@code --label TEXT}: job name (default {@code flink-task-sample})
 *   <li>{@code --state-uid UID}: uid of the counting operator (default {@code count-per-key}).
 *       A savepoint taken with one uid does not restore into a job with another, unless the run
 *       allows non-restored state.
 *   <li>{@code --fail-after N}: throw an exception after N records per subtask and attempt
 *       ({@code 0} fails when the operator opens), to test failed jobs
 *   <li>{@code --checkpoint-interval MS}: enable periodic checkpoints every MS milliseconds
 * </ul>
 */
public final class CountingJob {

    static final String SOURCE_UID = "sequence-source";
    static final String SINK_UID = "discard-sink";
    static final String COUNTER_NAME = "count-per-key";

    private CountingJob() {}

    public static void main(String[] args) throws Exception {
        JobOptions options = JobOptions.parse(args);
        System.out.println("flink-task sample job version " + JobVersion.NUMBER + ": " + options);

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        if (options.checkpointIntervalMillis > 0) {
            env.enableCheckpointing(options.checkpointIntervalMillis);
        }

        DataGeneratorSource<Long> source =
                new DataGeneratorSource<>(
                        index -> index,
                        Long.MAX_VALUE,
                        RateLimiterStrategy.perSecond(options.recordsPerSecond),
                        Types.LONG);
        final int keys = options.keys;

        env.fromSource(source, WatermarkStrategy.noWatermarks(), "sequence")
                .uid(SOURCE_UID)
                .keyBy(number -> number % keys, Types.LONG)
                .process(new CountPerKey(options.failAfterRecords))
                .uid(options.stateUid)
                .name(COUNTER_NAME)
                .sinkTo(new DiscardingSink<>())
                .uid(SINK_UID)
                .name("discard");

        env.execute(options.label);
    }
}
