package io.flinktask.samples;

/** Version 2 of the sample job, reported by the {@code version} gauge. */
final class JobVersion {

    static final int NUMBER = 2;

    private JobVersion() {}
}
