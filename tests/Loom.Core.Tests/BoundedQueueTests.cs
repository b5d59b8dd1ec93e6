using Loom.Core.Internal;

namespace Loom.Core.Tests;

public class BoundedQueueTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(10)]
    public void Holds_exactly_its_capacity_in_fifo_order_across_wraparounds(int capacity)
    {
        var queue = new BoundedQueue<string>(capacity);
        var next = 0;
        var expected = 0;
        for (var round = 0; round < 50; round++)
        {
            for (var i = 0; i < capacity; i++)
            {
                Assert.True(queue.TryEnqueue((next++).ToString()));
            }

            Assert.False(queue.TryEnqueue("overflow"));
            Assert.Equal(capacity, queue.ApproximateCount);
            Assert.False(queue.IsEmpty);

            // Drain part of it to move the ring's start around.
            var take = round % 2 == 0 ? capacity : Math.Max(1, capacity / 2);
            for (var i = 0; i < take; i++)
            {
                Assert.True(queue.TryDequeue(out var item));
                Assert.Equal((expected++).ToString(), item);
            }

            while (queue.ApproximateCount < capacity)
            {
                Assert.True(queue.TryEnqueue((next++).ToString()));
            }

            while (queue.TryDequeue(out var item))
            {
                Assert.Equal((expected++).ToString(), item);
            }

            Assert.True(queue.IsEmpty);
        }
    }

    [Fact]
    public async Task Many_producers_and_consumers_see_each_item_once()
    {
        var queue = new BoundedQueue<object>(7);
        const int Producers = 3, Consumers = 2, PerProducer = 10_000;
        var items = Enumerable.Range(0, Producers * PerProducer).Select(i => new object()).ToArray();
        var seen = new int[items.Length];
        var index = new System.Runtime.CompilerServices.ConditionalWeakTable<object, StrongBoxInt>();
        for (var i = 0; i < items.Length; i++)
        {
            index.Add(items[i], new StrongBoxInt(i));
        }

        var consumed = 0;
        var producers = Enumerable.Range(0, Producers).Select(p => Task.Run(() =>
        {
            for (var i = 0; i < PerProducer; i++)
            {
                var item = items[(p * PerProducer) + i];
                while (!queue.TryEnqueue(item))
                {
                    Thread.Yield();
                }
            }
        })).ToArray();
        var consumers = Enumerable.Range(0, Consumers).Select(_ => Task.Run(() =>
        {
            while (Volatile.Read(ref consumed) < items.Length)
            {
                if (queue.TryDequeue(out var item))
                {
                    index.TryGetValue(item, out var box);
                    Interlocked.Increment(ref seen[box!.Value]);
                    Interlocked.Increment(ref consumed);
                }
                else
                {
                    Thread.Yield();
                }
            }
        })).ToArray();
        await Task.WhenAll(producers.Concat(consumers)).WaitAsync(TimeSpan.FromSeconds(60)); // spinning threads on a loaded 2-core machine
        Assert.All(seen, count => Assert.Equal(1, count));
    }

    private sealed class StrongBoxInt(int value)
    {
        public int Value { get; } = value;
    }
}
