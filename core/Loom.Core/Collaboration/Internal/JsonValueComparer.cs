using System.Text.Json;
using Loom.Core.Internal;

namespace Loom.Core.Collaboration.Internal;

/// <summary>JSON value equality (numbers by value, objects regardless of member order) for grouping votes.</summary>
internal sealed class JsonValueComparer : IEqualityComparer<JsonElement>
{
    public static readonly JsonValueComparer Instance = new();

    public bool Equals(JsonElement x, JsonElement y) => JsonEquality.AreEqual(x, y);

    public int GetHashCode(JsonElement obj) => JsonEquality.Hash(obj);
}
