using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perf.Api.Tcp;

/// <summary>
/// Durable converter and integration entities: one JSON file per entity under <c>DATA_DIR/integrations</c>
/// (<c>converter-{id}.json</c>, <c>integration-{id}.json</c>). Core's log has no record kinds for them, and
/// they change at human rates, so a file per entity is the simplest honest store: each save writes a temp
/// file, fsyncs it, and renames it over the old one (atomic on POSIX), so a crash leaves either the old or
/// the new entity, never a torn one. Deletes remove the file. Everything is loaded at start.
/// </summary>
internal sealed class IntegrationStore
{
    public const string Converter = "converter";
    public const string Integration = "integration";

    private readonly string _directory;

    public IntegrationStore(string dataDir)
    {
        _directory = Path.Combine(dataDir, "integrations");
        Directory.CreateDirectory(_directory);
    }

    /// <summary>Every stored entity of a kind; unreadable files are reported and skipped, never fatal.</summary>
    public IEnumerable<(string File, JsonObject? Entity, string? Error)> Load(string kind)
    {
        foreach (var file in Directory.EnumerateFiles(_directory, kind + "-*.json"))
        {
            JsonObject? entity = null;
            string? error = null;
            try
            {
                entity = JsonNode.Parse(File.ReadAllBytes(file)) as JsonObject;
                error = entity is null ? "not a JSON object" : null;
            }
            catch (Exception ex) when (ex is JsonException or IOException)
            {
                error = ex.Message;
            }

            yield return (file, entity, error);
        }
    }

    public void Save(string kind, Guid id, JsonObject entity)
    {
        var path = PathOf(kind, id);
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                entity.WriteTo(writer);
            }

            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
    }

    public void Delete(string kind, Guid id) => File.Delete(PathOf(kind, id));

    private string PathOf(string kind, Guid id) => Path.Combine(_directory, $"{kind}-{id:D}.json");
}
