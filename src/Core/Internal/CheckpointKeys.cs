namespace Perf.Core.Internal;

/// <summary>
/// The state keys one component wrote into the <see cref="StateStore"/> at its last whole snapshot, so that a
/// checkpoint where nothing of it changed retains them instead of rewriting every record. Commit loop only.
/// </summary>
internal sealed class CheckpointKeys
{
    private List<string>? _last;
    private List<string>? _writing;

    /// <summary>
    /// When <paramref name="changed"/> is false and a whole snapshot was written before, retains its keys and
    /// returns true: the caller writes nothing. Otherwise starts a whole snapshot (<see cref="Write"/> each record,
    /// then <see cref="Done"/>) and returns false.
    /// </summary>
    public bool RetainIfUnchanged(StateStore state, bool changed)
    {
        if (!changed && _last is { } last)
        {
            foreach (var key in last)
            {
                state.Retain(key);
            }
            return true;
        }
        _writing = new List<string>(_last?.Count ?? 16);
        return false;
    }

    /// <summary>Writes one record of the snapshot started by <see cref="RetainIfUnchanged"/>.</summary>
    public void Write(StateStore state, string key, ref RecordWriter record)
    {
        var writing = _writing ?? throw new InvalidOperationException("No snapshot in progress.");
        state.Write(key, ref record);
        writing.Add(key);
    }

    /// <summary>The snapshot is whole: its keys are what the next unchanged checkpoint retains.</summary>
    public void Done()
    {
        _last = _writing ?? throw new InvalidOperationException("No snapshot in progress.");
        _writing = null;
    }
}
