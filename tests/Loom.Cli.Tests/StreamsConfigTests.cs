using Loom.Cli.Internal;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>loom.yaml <c>streams:</c> and <c>idempotency:</c>: what they map onto, and the mistakes they refuse (naming the field and line).</summary>
public sealed class StreamsConfigTests
{
    private static ProjectFile Parse(string yaml) => ProjectFileLoader.Parse(yaml, "loom.yaml", Path.GetTempPath());

    [Theory]
    [InlineData("streams:\n  - name: 'two words'\n    subjects: [a.>]\n", "loom.yaml:5:11: streams[0].name: 'two words' is not a stream name")]
    [InlineData("streams:\n  - subjects: [a.>]\n", "streams[0].name: missing")]
    [InlineData("streams:\n  - name: s\n", "streams[0].subjects: missing")]
    [InlineData("streams:\n  - name: s\n    subjects: []\n", "loom.yaml:6:15: streams[0].subjects: empty")]
    [InlineData("streams:\n  - name: s\n    subjects: ['a..b']\n", "streams[0].subjects: 'a..b' is not a topic pattern")]
    [InlineData("streams:\n  - name: s\n    subjects: [a.>]\n    max_bytes: lots\n", "loom.yaml:7:16: streams[0].max_bytes: expected a size such as 1048576, 512MiB or 10GiB; got 'lots'")]
    [InlineData("streams:\n  - name: s\n    subjects: [a.>]\n    max_events: 10k\n", "streams[0].max_events: expected a whole number; got '10k'")]
    [InlineData("streams:\n  - name: s\n    subjects: [a.>]\n    max_age: soon\n", "streams[0].max_age: expected a duration")]
    [InlineData("streams:\n  - name: s\n    subjects: [a.>]\n  - name: s\n    subjects: [b.>]\n", "streams[1].name: 's' is declared twice")]
    [InlineData("streams:\n  - name: s\n    subjects: [a.>]\n    colour: red\n", "colour")]
    [InlineData("idempotency:\n  window: 0s\n", "idempotency.window: must be positive")]
    [InlineData("idempotency:\n  window: forever\n", "idempotency.window: expected a duration")]
    [InlineData("idempotency:\n  max_keys: 0\n", "idempotency.max_keys")]
    [InlineData("idempotency:\n  max_disk_bytes: big\n", "idempotency.max_disk_bytes: expected a size")]
    public void Mistakes_are_refused_naming_the_field(string yaml, string expected)
    {
        // Three lines of agents come first: line numbers in the messages are those of the whole file.
        var ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\n" + yaml));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Streams_and_idempotency_map_onto_the_bridge_options()
    {
        var project = Parse("agents:\n  - name: a\n    command: x\nstreams:\n  - name: orders\n    subjects: [orders.>]\n    max_bytes: 10MiB\n    max_age: 7d\nidempotency:\n  window: 2h\n  max_keys: 5000\n  fsync: false\n");
        var options = ProjectRunner.BridgeOptionsFor(project);
        var stream = Assert.Single(options.Streams);
        Assert.Equal(("orders", 10L * 1024 * 1024, TimeSpan.FromDays(7)), (stream.Name, stream.MaxBytes, stream.MaxAge));
        Assert.Equal((TimeSpan.FromHours(2), 5000, false), (options.Idempotency.Window, options.Idempotency.MaxKeys, options.Idempotency.Fsync));
        Assert.Equal(TimeSpan.FromHours(24), ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).Idempotency.Window);
    }
}
