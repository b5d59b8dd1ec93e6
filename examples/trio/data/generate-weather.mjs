#!/usr/bin/env node
// Generates weather.csv: SYNTHETIC daily weather for every city in cities.json,
// for every date from 2026-01-01 to 2027-12-31.
//
// The numbers are not observations and not forecasts. Each day is drawn from a
// seeded pseudo-random process around the city's monthly climate normals
// (cities.json), so the monthly averages look like that city's climate while
// the individual days are invented. Running this script twice gives the same
// file byte for byte.
//
//   node generate-weather.mjs            # writes weather.csv next to this file
//   node generate-weather.mjs --check    # exits 1 if weather.csv is out of date
//   node generate-weather.mjs --stats    # prints generated vs normal monthly means

import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SEED = "loom-trio-weather-v1";
const START = "2026-01-01";
const END = "2027-12-31";
const HEADER = "city,country,date,condition,temp_min_c,temp_max_c,precip_mm,wind_kph,humidity_pct";

// ---- deterministic PRNG -------------------------------------------------

function hashString(s) {
  // FNV-1a, 32 bit
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand) {
  // Box-Muller; 1 - u avoids log(0)
  const u = 1 - rand();
  const v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

// ---- calendar helpers (UTC, no time zones involved) ----------------------

const DAY_MS = 86_400_000;
const isoOf = (ms) => new Date(ms).toISOString().slice(0, 10);
const msOf = (iso) => Date.parse(`${iso}T00:00:00Z`);
const daysInMonth = (y, m) => new Date(Date.UTC(y, m + 1, 0)).getUTCDate();

// Value of a monthly series on a given day: linear interpolation between the
// mid-points of adjacent months, so there are no jumps on the 1st.
function interpolate(series, year, month, day) {
  const dim = daysInMonth(year, month);
  const mid = (dim + 1) / 2;
  const pos = day - mid; // < 0: between previous month and this one
  if (pos === 0) return series[month];
  const otherMonth = pos < 0 ? (month + 11) % 12 : (month + 1) % 12;
  const otherYear = pos < 0 ? (month === 0 ? year - 1 : year) : month === 11 ? year + 1 : year;
  const otherDim = daysInMonth(otherYear, otherMonth);
  const span = pos < 0 ? mid + (otherDim - (otherDim + 1) / 2) : dim - mid + (otherDim + 1) / 2;
  const w = Math.abs(pos) / span;
  return series[month] * (1 - w) + series[otherMonth] * w;
}

// ---- the model -----------------------------------------------------------

const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const round1 = (x) => (Math.round(x * 10) / 10 + 0).toFixed(1).replace("-0.0", "0.0");

function* generateCity(city) {
  const c = city.climate;
  const rand = mulberry32(hashString(`${SEED}:${city.id}`));
  const annualRange = Math.max(...c.tmax) - Math.min(...c.tmax);
  const tempSd = 0.8 + 0.12 * annualRange; // tropical ~1 C, continental ~4 C
  const persistence = 0.3; // how much more likely a wet day follows a wet day
  let anomaly = gaussian(rand) * tempSd;
  let wetYesterday = false;

  for (let ms = msOf(START); ms <= msOf(END); ms += DAY_MS) {
    const d = new Date(ms);
    const y = d.getUTCFullYear();
    const m = d.getUTCMonth();
    const day = d.getUTCDate();
    const dim = daysInMonth(y, m);

    const tmaxN = interpolate(c.tmax, y, m, day);
    const tminN = interpolate(c.tmin, y, m, day);
    // Per-day probability of a wet (>= 1 mm) day and mean amount on such a day.
    const pWet = clamp(interpolate(c.rainDays.map((n, i) => n / daysInMonth(2026, i)), y, m, day), 0, 0.95);
    const meanWet = Math.max(1.2, interpolate(c.precip.map((p, i) => (c.rainDays[i] > 0 ? p / c.rainDays[i] : 1.5)), y, m, day));
    const fogP = c.fog ? interpolate(c.fog, y, m, day) : 0.015;

    // Two-state Markov chain whose stationary probability is pWet.
    const p11 = pWet + persistence * (1 - pWet);
    const p01 = pWet >= 1 ? 1 : (pWet * (1 - p11)) / (1 - pWet);
    const wet = rand() < (wetYesterday ? p11 : p01);
    wetYesterday = wet;

    // Temperature: AR(1) anomaly shared by min and max, plus small daily noise.
    anomaly = 0.7 * anomaly + Math.sqrt(1 - 0.49) * tempSd * gaussian(rand);
    const tropical = annualRange < 6;
    // Wet days are cooler by day and milder by night; the offsets are centred
    // on zero over the month so the monthly means stay at the normals.
    const wetCool = tropical ? 1.5 : 2.0;
    let tmax = tmaxN + anomaly + 0.5 * gaussian(rand) - wetCool * ((wet ? 1 : 0) - pWet);
    let tmin = tminN + 0.8 * anomaly + 0.5 * gaussian(rand) + 0.6 * ((wet ? 1 : 0) - pWet);
    const minSpread = wet ? 1.5 : 3;
    if (tmax - tmin < minSpread) {
      const midT = (tmax + tmin) / 2;
      tmax = midT + minSpread / 2;
      tmin = midT - minSpread / 2;
    }

    // Precipitation (mm). Wet days: at least 1 mm, exponential tail.
    let precip = 0;
    if (wet) precip = 1 + -Math.log(1 - rand()) * (meanWet - 1);
    const fog = !wet && rand() < fogP;
    const drizzleTrace = !wet && (fog ? rand() < 0.35 : rand() < 0.08 * Math.min(1, pWet * 3));
    if (drizzleTrace) precip = 0.1 + rand() * 0.8;

    // Cloud cover picks the dry-day condition.
    const cloud = clamp(0.12 + 0.9 * pWet + (rand() - 0.5) * 0.7 + (wetYesterday ? 0.1 : 0), 0, 1);

    let condition;
    const hot = tmax >= 24;
    if (wet) {
      if (tmax <= 1.5) condition = "snow";
      else if (tmax <= 4 && tmin <= 0) condition = "sleet";
      else if (hot && precip >= 8 && rand() < 0.55) condition = "thunderstorm";
      else if (precip >= 15) condition = "heavy rain";
      else if (precip >= 4) condition = "rain";
      else condition = "light rain";
    } else if (fog) {
      condition = drizzleTrace ? "drizzle" : "fog";
    } else if (drizzleTrace) {
      condition = tmax <= 1.5 ? "snow flurries" : "drizzle";
    } else if (cloud < 0.35) {
      condition = "sunny";
    } else if (cloud < 0.62) {
      condition = "partly cloudy";
    } else {
      condition = "cloudy";
    }

    const humidity = Math.round(
      clamp(c.humidity + (wet ? 12 : 0) + (fog ? 15 : 0) - (tmax - tmaxN) * 1.2 + gaussian(rand) * 6, 12, 100),
    );
    const wind = Math.round(Math.max(1, c.wind * Math.exp(0.35 * gaussian(rand)) * (wet ? 1.25 : 1) * (fog ? 0.6 : 1)));

    yield [city.name, city.country, isoOf(ms), condition, round1(tmin), round1(tmax), round1(precip), wind, humidity];
  }
}

function csvField(v) {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function generate(cities) {
  const lines = [HEADER];
  for (const city of cities) for (const row of generateCity(city)) lines.push(row.map(csvField).join(","));
  return lines.join("\n") + "\n";
}

function stats(cities, csv) {
  const rows = csv.trim().split("\n").slice(1).map((l) => l.split(","));
  for (const city of cities) {
    const mine = rows.filter((r) => r[0] === city.name);
    const out = [];
    for (let m = 0; m < 12; m++) {
      const month = mine.filter((r) => Number(r[2].slice(5, 7)) === m + 1);
      const avg = (k) => month.reduce((s, r) => s + Number(r[k]), 0) / month.length;
      const precipPerMonth = month.reduce((s, r) => s + Number(r[6]), 0) / 2;
      out.push(
        `${m + 1}: ${avg(5).toFixed(1)}/${city.climate.tmax[m]} ${avg(4).toFixed(1)}/${city.climate.tmin[m]} ${precipPerMonth.toFixed(0)}/${city.climate.precip[m]}mm`,
      );
    }
    console.log(`${city.name}\n  ${out.join("\n  ")}`);
  }
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const { cities } = JSON.parse(readFileSync(join(HERE, "cities.json"), "utf8"));
  const csv = generate(cities);
  const target = join(HERE, "weather.csv");
  if (process.argv.includes("--check")) {
    const current = existsSync(target) ? readFileSync(target, "utf8") : "";
    if (current !== csv) {
      console.error("weather.csv is out of date: run `node generate-weather.mjs`");
      process.exit(1);
    }
    console.log("weather.csv is up to date");
  } else if (process.argv.includes("--stats")) {
    stats(cities, csv);
  } else {
    writeFileSync(target, csv);
    console.log(`wrote ${target}: ${csv.length} bytes, ${csv.split("\n").length - 2} rows, ${cities.length} cities`);
  }
}
