# Octo runner bootstrap for PowerShell (pwsh) scripts. UNTESTED: no pwsh on the build machines.
# Holds helpers, never variable values: the variables (a JSON object) arrive on the inherited
# descriptor $env:OCTO_VARIABLES_FD and the script text on $env:OCTO_SCRIPT_FD (Linux/macOS).

function ConvertTo-OctoBase64([string]$Value) {
    [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($Value))
}

function Write-OctoServiceMessage([string]$Name, [System.Collections.Specialized.OrderedDictionary]$Attributes) {
    $text = ""
    foreach ($key in $Attributes.Keys) {
        $text += " $key='$(ConvertTo-OctoBase64 ([string]$Attributes[$key]))'"
    }
    [Console]::Out.WriteLine("##octo[$Name$text]")
    [Console]::Out.Flush()
}

$OctopusParameters = @{}
$__octoTable = [System.IO.File]::ReadAllText("/dev/fd/$($env:OCTO_VARIABLES_FD)") | ConvertFrom-Json -AsHashtable
foreach ($__octoKey in $__octoTable.Keys) { $OctopusParameters[$__octoKey] = [string]$__octoTable[$__octoKey] }
$OctoParameters = $OctopusParameters
Remove-Variable __octoTable, __octoKey

function Get-OctoVariable([string]$Name) { $OctopusParameters[$Name] }

function Set-OctoVariable {
    param([Parameter(Mandatory)][string]$Name, [Parameter(Mandatory)][AllowEmptyString()][string]$Value, [switch]$Sensitive)
    Write-OctoServiceMessage "setVariable" ([ordered]@{ name = $Name; value = $Value; sensitive = $(if ($Sensitive) { "True" } else { "False" }) })
}

function New-OctoArtifact {
    param([Parameter(Mandatory)][string]$Path, [string]$Name)
    $full = (Resolve-Path -LiteralPath $Path).ProviderPath
    if (-not $Name) { $Name = [System.IO.Path]::GetFileName($full) }
    $length = (Get-Item -LiteralPath $full).Length
    Write-OctoServiceMessage "createArtifact" ([ordered]@{ path = $full; name = $Name; length = $length })
}

function Update-Progress {
    param([Parameter(Mandatory)][int]$Percentage, [string]$Message = "")
    Write-OctoServiceMessage "progress" ([ordered]@{ percentage = $Percentage; message = $Message })
}

function Fail-Step([string]$Message) {
    if ($Message) { Write-OctoServiceMessage "resultMessage" ([ordered]@{ message = $Message }) }
    exit 1
}

function Write-OctoLevel([string]$Level, [string]$Text) {
    [Console]::Out.WriteLine("##octo[stdout-$Level]")
    [Console]::Out.WriteLine($Text)
    [Console]::Out.WriteLine("##octo[stdout-default]")
}
function Write-Highlight([string]$Text) { Write-OctoLevel "highlight" $Text }
function Write-Wait([string]$Text) { Write-OctoLevel "wait" $Text }

Set-Alias Set-OctopusVariable Set-OctoVariable
Set-Alias New-OctopusArtifact New-OctoArtifact

$__octoScript = [System.IO.File]::ReadAllText("/dev/fd/$($env:OCTO_SCRIPT_FD)")
Remove-Item Env:OCTO_VARIABLES_FD, Env:OCTO_SCRIPT_FD
. ([ScriptBlock]::Create($__octoScript))
if ($LASTEXITCODE) { exit $LASTEXITCODE }
exit 0
