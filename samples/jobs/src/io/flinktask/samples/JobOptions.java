package io.flinktask.samples;

/** Program arguments of {@link CountingJob}, parsed from {@code --name value} pairs. */
final class JobOptions {

    double recordsPerSecond = 20;
    int keys = 4;
    String label = "flink-task-sample";
    String stateUid = CountingJob.COUNTER_NAME;
    long failAfterRecords = -1;
    long checkpointIntervalMillis = 0;

    private JobOptions() {}

    /** Parses the arguments and throws IllegalArgumentException naming an invalid one. */
    static JobOptions parse(String[] args) {
        JobOptions options = new JobOptions();
        for (int i = 0; i < args.length; i += 2) {
            String name = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("missing value for " + name);
            }
            String value = args[i + 1];
            switch (name) {
                case "--rate":
                    options.recordsPerSecond = positiveDouble(name, value);
                    break;
                case "--keys":
                    options.keys = (int) positiveLong(name, value);
                    break;
                case "--label":
                    options.label = value;
                    break;
                case "--state-uid":
                    if (value.isEmpty()) {
                        throw new IllegalArgumentException("--state-uid must not be empty");
                    }
                    options.stateUid = value;
                    break;
                case "--fail-after":
                    options.failAfterRecords = nonNegativeLong(name, value);
                    break;
                case "--checkpoint-interval":
                    options.checkpointIntervalMillis = positiveLong(name, value);
                    break;
                default:
                    throw new IllegalArgumentException(
                            "unknown argument " + name + "; expected --rate, --keys, --label, "
                                    + "--state-uid, --fail-after or --checkpoint-interval");
            }
        }
        return options;
    }

    private static double positiveDouble(String name, String value) {
        double parsed;
        try {
            parsed = Double.parseDouble(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be a number, got " + value);
        }
        if (!(parsed > 0)) {
            throw new IllegalArgumentException(name + " must be positive, got " + value);
        }
        return parsed;
    }

    private static long positiveLong(String name, String value) {
        long parsed = nonNegativeLong(name, value);
        if (parsed == 0) {
            throw new IllegalArgumentException(name + " must be positive, got " + value);
        }
        return parsed;
    }

    private static long nonNegativeLong(String name, String value) {
        long parsed;
        try {
            parsed = Long.parseLong(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be an integer, got " + value);
        }
        if (parsed < 0 || parsed > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(name + " is out of range: " + value);
        }
        return parsed;
    }

    @Override
    public String toString() {
        return "rate=" + recordsPerSecond + " keys=" + keys + " label=" + label
                + " stateUid=" + stateUid + " failAfter=" + failAfterRecords
                + " checkpointInterval=" + checkpointIntervalMillis;
    }
}
