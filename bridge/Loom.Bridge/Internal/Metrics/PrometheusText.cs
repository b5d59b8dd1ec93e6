using System.Globalization;
using System.Text;

namespace Loom.Bridge.Internal.Metrics;

/// <summary>Names, escaping and number formatting of the Prometheus text exposition format 0.0.4.</summary>
internal static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>
    /// The Prometheus name of an instrument: invalid characters become '_', the unit becomes a
    /// suffix (s → _seconds, By → _bytes, ms → _milliseconds; annotations such as {event} add
    /// nothing), monotonic counters end in _total, and gauges that would end in _count, _sum
    /// or _bucket get _current appended.
    /// </summary>
    public static string MetricName(string name, string? unit, bool counter, bool histogram = false)
    {
        var sanitized = SanitizeName(name, allowColon: true);
        var suffix = unit switch
        {
            "s" => "seconds",
            "ms" => "milliseconds",
            "By" => "bytes",
            "1" => "ratio",
            _ => null,
        };
        if (suffix is not null && !sanitized.EndsWith("_" + suffix, StringComparison.Ordinal))
        {
            sanitized += "_" + suffix;
        }

        if (counter && !sanitized.EndsWith("_total", StringComparison.Ordinal))
        {
            sanitized += "_total";
        }
        else if (!counter && !histogram && (sanitized.EndsWith("_count", StringComparison.Ordinal) || sanitized.EndsWith("_sum", StringComparison.Ordinal) || sanitized.EndsWith("_bucket", StringComparison.Ordinal)))
        {
            // Those suffixes belong to histograms and summaries (promtool flags them on gauges).
            sanitized += "_current";
        }

        return sanitized;
    }

    /// <summary>[a-zA-Z_:][a-zA-Z0-9_:]* for metric names, [a-zA-Z_][a-zA-Z0-9_]* for label names.</summary>
    public static string SanitizeName(string name, bool allowColon)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "_";
        }

        var builder = new StringBuilder(name.Length + 1);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            var ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' || (allowColon && c == ':') || (i > 0 && c is >= '0' and <= '9');
            if (i == 0 && c is >= '0' and <= '9')
            {
                builder.Append('_');
                ok = true;
            }

            builder.Append(ok ? c : '_');
        }

        var result = builder.ToString();
        return !allowColon && result.StartsWith("__", StringComparison.Ordinal) ? "x" + result : result; // __ is reserved for labels
    }

    /// <summary>Label value escaping: backslash, double quote and line feed.</summary>
    public static void AppendLabelValue(StringBuilder builder, string value)
    {
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\':
                    builder.Append(@"\\");
                    break;
                case '"':
                    builder.Append("\\\"");
                    break;
                case '\n':
                    builder.Append(@"\n");
                    break;
                default:
                    builder.Append(c);
                    break;
            }
        }
    }

    /// <summary>HELP text escaping: backslash and line feed.</summary>
    public static string EscapeHelp(string text)
    {
        if (text.AsSpan().IndexOfAny('\\', '\n') < 0)
        {
            return text;
        }

        return text.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);
    }

    /// <summary>Prometheus float: shortest round-trip form, +Inf, -Inf, NaN.</summary>
    public static string FormatValue(double value)
    {
        if (double.IsPositiveInfinity(value))
        {
            return "+Inf";
        }

        if (double.IsNegativeInfinity(value))
        {
            return "-Inf";
        }

        if (double.IsNaN(value))
        {
            return "NaN";
        }

        if (value == Math.Floor(value) && Math.Abs(value) < 1e15)
        {
            return ((long)value).ToString(CultureInfo.InvariantCulture);
        }

        return value.ToString("R", CultureInfo.InvariantCulture);
    }

    private static readonly Comparer<KeyValuePair<string, string>> ByKey = Comparer<KeyValuePair<string, string>>.Create(static (a, b) => string.CompareOrdinal(a.Key, b.Key));

    /// <summary>Renders labels sorted by name: <c>a="x",b="y"</c> (empty for none). Tags with null values are left out.</summary>
    public static string RenderLabels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0)
        {
            return string.Empty;
        }

        var pairs = new KeyValuePair<string, string>[tags.Length];
        var n = 0;
        foreach (var tag in tags)
        {
            if (tag.Value is null)
            {
                continue;
            }

            var value = tag.Value is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : tag.Value.ToString() ?? string.Empty;
            pairs[n++] = new KeyValuePair<string, string>(SanitizeName(tag.Key, allowColon: false), value);
        }

        Array.Sort(pairs, 0, n, ByKey);
        var builder = new StringBuilder();
        for (var i = 0; i < n; i++)
        {
            if (i > 0)
            {
                builder.Append(',');
            }

            builder.Append(pairs[i].Key).Append("=\"");
            AppendLabelValue(builder, pairs[i].Value);
            builder.Append('"');
        }

        return builder.ToString();
    }
}
