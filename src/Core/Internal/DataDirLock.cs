namespace Perf.Core.Internal;

/// <summary>
/// The data directory's owner: one process at a time. Two processes on one directory write one log and one store
/// from two places, which loses acknowledged data and leaves files that no longer open. The lock is the runtime's
/// exclusive lock of <c>DATA_DIR/lock</c> (flock on Linux), released with the process however it ends.
/// </summary>
internal sealed class DataDirLock : IDisposable
{
    private readonly FileStream _file;

    private DataDirLock(FileStream file) => _file = file;

    /// <summary>
    /// Checks that the directory and the store's directories in it can be written, then takes the lock. Throws
    /// <see cref="IOException"/> naming the directory and the cause: not writable, or in use by another process.
    /// </summary>
    public static DataDirLock Acquire(string dataDir)
    {
        foreach (var dir in new[] { dataDir, Path.Combine(dataDir, "log"), Path.Combine(dataDir, "kv") })
        {
            if (Directory.Exists(dir))
            {
                EnsureWritable(dataDir, dir);
            }
        }

        var path = Path.Combine(dataDir, "lock");
        try
        {
            var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            file.SetLength(0);
            var pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
            file.Write(pid);
            file.Flush();
            return new DataDirLock(file);
        }
        catch (IOException e)
        {
            throw new IOException(
                $"DATA_DIR {Path.GetFullPath(dataDir)} is in use by another process (it holds {path}); two servers on one data directory lose acknowledged data",
                e);
        }
    }

    private static void EnsureWritable(string dataDir, string dir)
    {
        var probe = Path.Combine(dir, $".write-probe-{Environment.ProcessId}");
        try
        {
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"DATA_DIR {Path.GetFullPath(dataDir)} is not writable ({dir}: {e.Message})", e);
        }
    }

    public void Dispose() => _file.Dispose();
}
