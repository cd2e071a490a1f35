package io.flinktask.samples;

import java.util.HashSet;
import java.util.Set;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Counts records per key in a {@code ValueState<Long>} and emits each new count.
 *
 * <p>Operator gauges, per subtask and attempt:
 *
 * <ul>
 *   <li>{@code maxCount}: the largest count written so far. After a restore it continues from
 *       the restored counts instead of starting at 1.
 *   <li>{@code restoredKeys}: the number of keys that already had a count the first time this
 *       attempt saw them, so it is 0 for a job that started without state.
 *   <li>{@code version}: the job version the jar was built with (1 or 2).
 * </ul>
 */
final class CountPerKey extends KeyedProcessFunction<Long, Long, Long> {

    private static final long serialVersionUID = 1L;

    private final long failAfterRecords;

    private transient ValueState<Long> count;
    private transient Set<Long> keysSeen;
    private transient long maxCount;
    private transient int restoredKeys;
    private transient long recordsProcessed;

    CountPerKey(long failAfterRecords) {
        this.failAfterRecords = failAfterRecords;
    }

    @Override
    public void open(OpenContext openContext) {
        if (failAfterRecords == 0) {
            throw new IllegalStateException("failing on open as requested by --fail-after 0");
        }
        count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
        keysSeen = new HashSet<>();
        MetricGroup metrics = getRuntimeContext().getMetricGroup();
        metrics.gauge("maxCount", (Gauge<Long>) () -> maxCount);
        metrics.gauge("restoredKeys", (Gauge<Integer>) () -> restoredKeys);
        metrics.gauge("version", (Gauge<Integer>) () -> JobVersion.NUMBER);
    }

    @Override
    public void processElement(Long number, Context context, Collector<Long> out)
            throws Exception {
        recordsProcessed++;
        if (failAfterRecords > 0 && recordsProcessed > failAfterRecords) {
            throw new IllegalStateException(
                    "failing after " + failAfterRecords + " records as requested by --fail-after");
        }
        Long previous = count.value();
        if (keysSeen.add(context.getCurrentKey()) && previous != null) {
            restoredKeys++;
        }
        long next = (previous == null ? 0 : previous) + 1;
        count.update(next);
        maxCount = Math.max(maxCount, next);
        out.collect(next);
    }
}
