namespace Perf.EndToEnd;

internal static class TestDirectories
{
    /// <summary>Removes a test's data directory; a directory the host never created is fine.</summary>
    public static void Delete(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }
}
