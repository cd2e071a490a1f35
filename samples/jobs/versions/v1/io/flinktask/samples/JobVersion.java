package io.flinktask.samples;

/** Version 1 of the sample job, reported by the {@code version} gauge. */
final class JobVersion {

    static final int NUMBER = 1;

    private JobVersion() {}
}
