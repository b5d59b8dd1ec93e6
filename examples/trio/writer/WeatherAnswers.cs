using System.Globalization;
using System.Text.Json;

namespace Loom.Examples.Trio.Writer;

/// <summary>One day of weather as the Researcher's <c>weather.get</c> returns it (camelCase JSON).</summary>
internal sealed record WeatherDay(string City, string Date, string Condition, double TempMinC, double TempMaxC, double PrecipMm, double WindKph, string Source, string Summary)
{
    public bool Synthetic => Source == "synthetic";

    public static WeatherDay? From(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("date", out var date) || !e.TryGetProperty("tempMinC", out var min) || !e.TryGetProperty("tempMaxC", out var max)
            || !e.TryGetProperty("precipMm", out var rain))
        {
            return null;
        }

        string Text(string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
        return new WeatherDay(
            Text("city"), date.GetString() ?? "", Text("condition"), min.GetDouble(), max.GetDouble(), rain.GetDouble(),
            e.TryGetProperty("windKph", out var wind) && wind.ValueKind == JsonValueKind.Number ? wind.GetDouble() : 0,
            Text("source"), Text("summary"));
    }
}

/// <summary>
/// Direct answers to a weather part from the days found: is it cold or warm, will it rain or snow,
/// what to wear or pack, which week is best. Every figure stated from the bundled dataset is
/// labelled "synthetic sample data" in the same sentence.
/// </summary>
internal static class WeatherAnswers
{
    public const string SyntheticLabel = "synthetic sample data";

    /// <summary>Days shown one a line; longer spans are shown week by week.</summary>
    public const int DaysShownSingly = 7;

    private static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);

    private static string Range(double a, double b) => Math.Abs(a - b) < 0.05 ? $"{F(a)} °C" : $"{F(a)} to {F(b)} °C";

    /// <summary>"2026-12-05", "2026-12-05 and 2026-12-06" or "2026-12-01 to 2026-12-31".</summary>
    public static string Period(IReadOnlyList<WeatherDay> days) =>
        days.Count == 1 ? days[0].Date : days.Count == 2 ? $"{days[0].Date} and {days[1].Date}" : $"{days[0].Date} to {days[^1].Date}";

    private static bool Wet(WeatherDay d) => d.PrecipMm >= 1;

    private static bool Snowy(WeatherDay d) => d.Condition.Contains("snow", StringComparison.Ordinal) || d.Condition.Contains("sleet", StringComparison.Ordinal);

    private static bool Sunny(WeatherDay d) => d.Condition is "sunny" or "partly cloudy";

    /// <summary>The answer sentences for what the part asks, in the order asked; "weather" when nothing specific is.</summary>
    public static List<string> Answers(IReadOnlyList<string> asks, IReadOnlyList<WeatherDay> days, string place)
    {
        var label = days.All(d => d.Synthetic) ? $" ({SyntheticLabel})" : "";
        var period = Period(days);
        var lows = (Min: days.Min(d => d.TempMinC), Max: days.Max(d => d.TempMinC));
        var highs = (Min: days.Min(d => d.TempMaxC), Max: days.Max(d => d.TempMaxC));
        var wet = days.Count(Wet);
        var total = days.Sum(d => d.PrecipMm);
        var of = days.Count == 1 ? "" : $" on {wet} of {days.Count} days";
        var temps = $"highs of {Range(highs.Min, highs.Max)} and lows of {Range(lows.Min, lows.Max)}";
        var answers = new List<string>();
        var wanted = asks.Count > 0 ? asks : ["weather"];
        foreach (var ask in wanted.Distinct(StringComparer.Ordinal))
        {
            switch (ask)
            {
                case "cold":
                    answers.Add(highs.Max < 8 ? $"Cold? Yes: {temps} in {place} on {period}{label}."
                        : highs.Max < 16 ? $"Cold? Cool rather than cold: {temps} in {place} on {period}{label}."
                        : $"Cold? No: {temps} in {place} on {period}{label}.");
                    break;
                case "warm":
                    answers.Add(highs.Min >= 24 ? $"Warm? Yes, hot: {temps} in {place} on {period}{label}."
                        : highs.Min >= 18 ? $"Warm? Mild to warm: {temps} in {place} on {period}{label}."
                        : $"Warm? No: {temps} in {place} on {period}{label}.");
                    break;
                case "temperature":
                    answers.Add($"Temperatures in {place} on {period}: {temps}{label}.");
                    break;
                case "rain":
                    answers.Add(wet > 0 ? $"Rain? Yes, rain{of} ({F(total)} mm in all){label}: take an umbrella."
                        : total > 0 ? $"Rain? Only traces ({F(total)} mm in all) in {place} on {period}{label}: an umbrella is optional."
                        : $"Rain? No rain in {place} on {period}{label}: an umbrella should not be needed.");
                    break;
                case "snow":
                    var snowy = days.Count(Snowy);
                    answers.Add(snowy > 0 ? $"Snow? Yes, snow or sleet on {snowy} of {days.Count} days in {place}{label}." : $"Snow? No snow in {place} on {period}{label}.");
                    break;
                case "sun":
                    var sunny = days.Count(Sunny);
                    answers.Add($"Sun? Sunny or partly cloudy on {sunny} of {days.Count} days in {place} on {period}{label}.");
                    break;
                case "wind":
                    answers.Add($"Wind? Winds of up to {F(days.Max(d => d.WindKph))} km/h in {place} on {period}{label}.");
                    break;
                case "clothes":
                    var coat = highs.Max < 8 ? "yes, bring a warm coat or jacket, and layers"
                        : highs.Max < 16 ? "yes, bring a jacket or a warm layer"
                        : lows.Min < 14 ? "a light jacket or layer for the evenings should do"
                        : "no jacket needed, dress for warm weather";
                    var umbrella = wet > 0 ? $"; pack an umbrella or raincoat (rain{of})"
                        : total > 0 ? $"; an umbrella is optional (only traces of rain, {F(total)} mm in all)"
                        : "; no umbrella needed (no rain)";
                    answers.Add($"What to wear or pack: {coat}{umbrella}. In {place} on {period}: {temps}{label}.");
                    break;
                case "best-time":
                    answers.Add(BestWeek(days, place, label));
                    break;
                default:
                    var conditions = days.GroupBy(d => d.Condition).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).Take(2).Select(g => g.Key);
                    answers.Add($"Weather in {place} on {period}: mostly {string.Join(" or ", conditions)}, {temps}, rain{(days.Count == 1 ? (wet > 0 ? "" : ": none") : of)}{label}.");
                    break;
            }
        }

        return answers;
    }

    /// <summary>The best week of the span: fewest wet days, then highs closest to 22 °C.</summary>
    private static string BestWeek(IReadOnlyList<WeatherDay> days, string place, string label)
    {
        var weeks = Weeks(days);
        var best = weeks.OrderBy(w => w.Count(Wet)).ThenBy(w => Math.Abs(w.Average(d => d.TempMaxC) - 22)).ThenBy(w => w[0].Date, StringComparer.Ordinal).First();
        var overall = $"over {Period(days)}, highs of {Range(days.Min(d => d.TempMaxC), days.Max(d => d.TempMaxC))} and rain on {days.Count(Wet)} of {days.Count} days";
        return $"A good time to visit {place}? {char.ToUpperInvariant(overall[0])}{overall[1..]}; the driest and mildest week is {Period(best)} (rain on {best.Count(Wet)} of {best.Count} days, highs of {Range(best.Min(d => d.TempMaxC), best.Max(d => d.TempMaxC))}){label}.";
    }

    public static List<List<WeatherDay>> Weeks(IReadOnlyList<WeatherDay> days) =>
        days.Select((d, i) => (d, i)).GroupBy(x => x.i / 7).Select(g => g.Select(x => x.d).ToList()).ToList();

    /// <summary>The figures: one line a day, or one a week for longer spans; each labelled when synthetic.</summary>
    public static List<string> Figures(IReadOnlyList<WeatherDay> days)
    {
        var label = $" ({SyntheticLabel})";
        if (days.Count <= DaysShownSingly)
        {
            return days.Select(d => $"{d.Summary}{(d.Synthetic ? label : "")}.").ToList();
        }

        return Weeks(days).Select(w =>
            $"{w[0].City}, {Period(w)}: highs of {Range(w.Min(d => d.TempMaxC), w.Max(d => d.TempMaxC))}, lows of {Range(w.Min(d => d.TempMinC), w.Max(d => d.TempMinC))}, rain on {w.Count(Wet)} of {w.Count} days ({F(w.Sum(d => d.PrecipMm))} mm){(w.All(d => d.Synthetic) ? label : "")}.").ToList();
    }

    /// <summary>What cannot be answered without data, one sentence per ask.</summary>
    public static string Unanswerable(IReadOnlyList<string> asks, string place)
    {
        var what = asks.Where(a => a != "weather").Select(a => a switch
        {
            "cold" => "whether it will be cold",
            "warm" => "whether it will be warm",
            "temperature" => "the temperatures",
            "rain" => "whether it will rain (or whether to take an umbrella)",
            "snow" => "whether it will snow",
            "sun" => "whether it will be sunny",
            "wind" => "how windy it will be",
            "clothes" => "what to wear or pack (a jacket, an umbrella)",
            "best-time" => "which week is best to visit",
            _ => "the weather",
        }).Distinct(StringComparer.Ordinal).ToList();
        var list = what.Count == 0 ? "what the weather will be" : string.Join(", ", what);
        return $"So this report cannot say {list} in {place}: check a forecast service nearer the time.";
    }
}
