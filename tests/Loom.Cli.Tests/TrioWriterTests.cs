using System.Text.Json;
using System.Text.RegularExpressions;
using Loom.Examples.Trio.Writer;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// The trio Writer's offline report (examples/trio/writer/ReportComposer.cs and WeatherAnswers.cs,
/// compiled into this project): each part of the question answered or said to be unanswerable,
/// synthetic figures labelled where stated, no source cited for what the data does not have.
/// </summary>
public sealed partial class TrioWriterTests
{
    [GeneratedRegex(@"\[\d+\]")]
    private static partial Regex Citation();

    private static JsonElement Day(string city, string date, string condition, double min, double max, double rain, string source = "synthetic") =>
        JsonSerializer.SerializeToElement(new
        {
            city,
            country = "X",
            date,
            condition,
            tempMinC = min,
            tempMaxC = max,
            precipMm = rain,
            windKph = 12,
            humidityPct = 70,
            source,
            summary = $"{city}, {date}: {condition}, {min:0.0} to {max:0.0} °C, precipitation {rain:0.0} mm, wind 12 km/h, humidity 70%",
            note = "Synthetic weather",
        });

    private static Finding WeatherFinding(string taskId, string city, params JsonElement[] days)
    {
        var id = $"weather:{city.ToLowerInvariant()}:{days[0].GetProperty("date").GetString()}";
        return new Finding("finding", taskId, "q", "a", [new Source(id, days[0].GetProperty("source").GetString() == "synthetic" ? $"Bundled weather dataset (synthetic sample data): {city}" : $"Open-Meteo: {city}", null, null)],
            [.. days.Select(d => new FindingSentence(d.GetProperty("summary").GetString()!, id))], days[0], null, days);
    }

    private static string Section(string markdown, string heading)
    {
        var start = markdown.IndexOf("## " + heading, StringComparison.Ordinal);
        Assert.True(start >= 0, $"no section '{heading}':\n{markdown}");
        var end = markdown.IndexOf("\n## ", start + 3, StringComparison.Ordinal);
        return markdown[start..(end < 0 ? markdown.Length : end)];
    }

    [Fact]
    public void A_city_without_data_is_said_plainly_with_nothing_cited()
    {
        var plan = new Plan("plan", "Will it be cold in Oslo on Friday?", [new PlanTask("t1", "Will it be cold in Oslo on Friday?", "weather.get", "Oslo", "2026-12-04", "weather", null, ["cold"], false)]);
        var finding = new Finding("finding", "t1", "q", "", [], [], NoData: ["No weather data for Oslo in the bundled set", "The bundled set covers 40 cities: Lisbon, Stockholm"]);
        var report = ReportComposer.Compose(plan, [finding], []);
        Assert.Contains("No weather data for Oslo in the bundled set.", report.Markdown, StringComparison.Ordinal);
        Assert.Contains("cannot say whether it will be cold in Oslo", report.Markdown, StringComparison.Ordinal);
        Assert.Empty(report.Sources);
        Assert.DoesNotMatch(Citation(), report.Markdown);
        Assert.Contains("No weather data for Oslo", Section(report.Markdown, "Summary"), StringComparison.Ordinal);
    }

    [Fact]
    public void Synthetic_figures_are_labelled_wherever_they_are_stated_and_the_question_is_answered()
    {
        var plan = new Plan("plan", "Should I bring a jacket to Lisbon next weekend?", [new PlanTask("t1", "Should I bring a jacket to Lisbon next weekend?", "weather.get", "Lisbon", "2026-12-05", "packing", ["2026-12-05", "2026-12-06"], ["clothes"])]);
        var finding = WeatherFinding("t1", "Lisbon", Day("Lisbon", "2026-12-05", "rain", 8.8, 12.2, 4), Day("Lisbon", "2026-12-06", "sunny", 9.9, 14.4, 0));
        var report = ReportComposer.Compose(plan, [finding], []);
        var lines = report.Markdown.Split('\n');
        Assert.All(lines.Where(l => l.Contains("°C", StringComparison.Ordinal)), l => Assert.Contains("synthetic sample data", l, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("bring a jacket", StringComparison.Ordinal) && l.Contains("umbrella", StringComparison.Ordinal));
        Assert.Contains("Lisbon, 2026-12-05: rain, 8.8 to 12.2 °C", report.Markdown, StringComparison.Ordinal);
        Assert.Contains("not observations and not a forecast", report.Markdown, StringComparison.Ordinal);
        Assert.Equal(["weather:lisbon:2026-12-05"], report.Sources.Select(s => s.Id));
    }

    [Theory]
    [InlineData("cold", 2.0, 6.0, 0.0, "Cold? Yes")]
    [InlineData("cold", 12.0, 20.0, 0.0, "Cold? No")]
    [InlineData("warm", 20.0, 30.0, 0.0, "Warm? Yes")]
    [InlineData("rain", 10.0, 15.0, 6.0, "Rain? Yes")]
    [InlineData("rain", 10.0, 15.0, 0.0, "Rain? No rain")]
    [InlineData("snow", -5.0, 0.0, 3.0, "Snow? Yes")]
    [InlineData("sun", 10.0, 15.0, 0.0, "Sun? Sunny or partly cloudy on 1 of 1 days")]
    public void Each_ask_gets_a_direct_answer(string ask, double min, double max, double rain, string expected)
    {
        var condition = ask == "snow" ? "snow" : rain > 0 ? "rain" : "sunny";
        var plan = new Plan("plan", "q?", [new PlanTask("t1", "q?", "weather.get", "Rome", "2026-12-05", "weather", null, [ask])]);
        var report = ReportComposer.Compose(plan, [WeatherFinding("t1", "Rome", Day("Rome", "2026-12-05", condition, min, max, rain))], []);
        Assert.Contains(expected, report.Markdown, StringComparison.Ordinal);
        Assert.Contains(expected, Section(report.Markdown, "Summary"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_month_is_summarised_week_by_week_with_the_best_week_named()
    {
        var days = Enumerable.Range(1, 31).Select(d => Day("Tokyo", $"2027-03-{d:00}", d is > 7 and <= 14 ? "sunny" : "rain", 5, 10 + (d / 3.0), d is > 7 and <= 14 ? 0 : 5)).ToArray();
        var plan = new Plan("plan", "Is March a good time to visit Tokyo?", [new PlanTask("t1", "Is March a good time to visit Tokyo?", "weather.get", "Tokyo", "2027-03-01", "best-time", [.. days.Select(d => d.GetProperty("date").GetString()!)], ["best-time"])]);
        var report = ReportComposer.Compose(plan, [WeatherFinding("t1", "Tokyo", days)], []);
        Assert.Contains("the driest and mildest week is 2027-03-08 to 2027-03-14", report.Markdown, StringComparison.Ordinal);
        Assert.Equal(5, Regex.Count(report.Markdown, @"^- Tokyo, 2027-03-\d\d to 2027-03-\d\d: highs", RegexOptions.Multiline));
        Assert.All(report.Markdown.Split('\n').Where(l => l.Contains("°C", StringComparison.Ordinal)), l => Assert.Contains("synthetic sample data", l, StringComparison.Ordinal));
    }

    [Fact]
    public void Figures_from_a_real_provider_are_not_called_synthetic()
    {
        var plan = new Plan("plan", "Will it rain in Rome?", [new PlanTask("t1", "Will it rain in Rome?", "weather.get", "Rome", "2026-12-05", "weather", null, ["rain"])]);
        var report = ReportComposer.Compose(plan, [WeatherFinding("t1", "Rome", Day("Rome", "2026-12-05", "rain", 8, 12, 3, source: "open-meteo"))], []);
        Assert.DoesNotContain("synthetic", report.Markdown, StringComparison.Ordinal);
        Assert.Contains("Rain? Yes", report.Markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_part_of_a_multi_part_question_has_a_section_and_a_summary_sentence()
    {
        var plan = new Plan("plan", "What can I see in Rome, and will it rain there on Saturday, and what about Oslo?",
        [
            new PlanTask("t1", "What can I see in Rome?", "web.search", "Rome", Aspect: "sightseeing"),
            new PlanTask("t2", "Will it rain in Rome on Saturday?", "weather.get", "Rome", "2026-12-05", "weather", null, ["rain"]),
            new PlanTask("t3", "What about Oslo?", "web.search", "Oslo", Aspect: "general", CityInData: false),
            new PlanTask("t4", "And the food?", "web.search", "Rome", Aspect: "food"),
        ]);
        var sights = new Finding("finding", "t1", "q", "a", [new Source("doc-0045", "Rome: landmarks and culture", "https://x", null)],
            [new FindingSentence("The Colosseum, completed in AD 80, is the largest amphitheatre ever built.", "doc-0045")]);
        var rain = WeatherFinding("t2", "Rome", Day("Rome", "2026-12-05", "rain", 8, 12, 3));
        var oslo = new Finding("finding", "t3", "q", "", [], [], NoData: ["The bundled data has no documents about Oslo (it covers 40 cities)"]);
        var report = ReportComposer.Compose(plan, [sights, rain, oslo], ["t4"]);
        Assert.Contains("Colosseum", Section(report.Markdown, "What can I see in Rome?"), StringComparison.Ordinal);
        Assert.Contains("Rain? Yes", Section(report.Markdown, "Will it rain in Rome on Saturday?"), StringComparison.Ordinal);
        Assert.Contains("no documents about Oslo", Section(report.Markdown, "What about Oslo?"), StringComparison.Ordinal);
        Assert.Contains("No finding arrived", Section(report.Markdown, "And the food?"), StringComparison.Ordinal);
        var summary = Section(report.Markdown, "Summary");
        Assert.Contains("Colosseum", summary, StringComparison.Ordinal);
        Assert.Contains("Rain? Yes", summary, StringComparison.Ordinal);
        Assert.Contains("no documents about Oslo", summary, StringComparison.Ordinal);
        Assert.Equal(["doc-0045", "weather:rome:2026-12-05"], report.Sources.Select(s => s.Id));
        Assert.Equal(["t1", "t2", "t3", "t4"], report.Tasks!.Select(t => t.Id));
        Assert.Equal(["The bundled data has no documents about Oslo (it covers 40 cities)"], report.Tasks![2].NoData);
    }
}
